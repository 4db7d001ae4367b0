"""Rules shared by the order functions, shipped as a layer."""

BIG_ORDERS = "orders[?total > `100`].customer"
