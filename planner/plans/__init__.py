"""Level 5: fit, cost, plans, recommend and purchase: searches over the levels below."""
