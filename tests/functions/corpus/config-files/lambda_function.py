"""Reads files shipped beside the handler: a config by a path relative to
the working directory, a template under LAMBDA_TASK_ROOT, and data next to
this module's own __file__."""

import csv
import json
import os

HERE = os.path.dirname(os.path.realpath(__file__))


def load_config():
    with open(f"config/app-{os.getenv('ENV', 'dev')}.json") as config_file:
        return json.load(config_file)


def lambda_handler(event, context):
    config = load_config()
    template_path = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "templates", "message.txt")
    with open(template_path) as template_file:
        template = template_file.read()
    with open(os.path.join(HERE, "data", "names.csv"), newline="") as names_file:
        names = [row["name"] for row in csv.DictReader(names_file)]
    names.append(event["name"])
    return {
        "messages": [template.format(name=name, **config).strip() for name in names],
        "cwd": os.getcwd(),
        "template": template_path,
        "here": HERE,
    }
