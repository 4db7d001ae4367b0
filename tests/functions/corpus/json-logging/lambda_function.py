"""Logs JSON lines: a JSON formatter set on the handlers the Lambda runtime
put on the root logger, fields filled from each log record (including the
request id the runtime adds)."""

import json
import logging


def _json_formatter(obj):
    """Formatter for unserialisable values."""
    return str(obj)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object; a dict message is kept as it
    is, a message that parses as JSON is merged in decoded."""

    def __init__(self, **kwargs):
        super().__init__()
        self.format_dict = {
            "timestamp": "%(asctime)s",
            "level": "%(levelname)s",
            "location": "%(name)s.%(funcName)s:%(lineno)d",
        }
        self.format_dict.update(kwargs)

    def format(self, record):
        record_dict = record.__dict__.copy()
        record_dict["asctime"] = self.formatTime(record)
        log_dict = {key: value % record_dict for key, value in self.format_dict.items() if value}
        if isinstance(record_dict["msg"], dict):
            log_dict["message"] = record_dict["msg"]
        else:
            log_dict["message"] = record.getMessage()
            try:
                log_dict["message"] = json.loads(log_dict["message"])
            except (TypeError, ValueError):
                pass
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            log_dict["exception"] = record.exc_text
        return json.dumps(log_dict, default=_json_formatter)


def setup_logger(level="DEBUG", **kwargs):
    for handler in logging.root.handlers:
        handler.setFormatter(JsonFormatter(**kwargs))
    logging.root.setLevel(level=level)


setup_logger("INFO", request_id="%(aws_request_id)s")
logger = logging.getLogger("orders")


def validate(order):
    if not order["items"]:
        raise ValueError(f"order {order['order_id']} has no items")


def lambda_handler(event, context):
    logger.info({"event": "order_received", "order_id": event["order_id"]})
    logger.info(json.dumps({"items": len(event["items"])}))
    logger.debug("not logged at INFO")
    try:
        validate(event)
    except ValueError:
        logger.exception("order rejected")
        return {"status": "rejected"}
    return {"status": "accepted"}
