"""Schemathesis hooks, loaded through schemathesis.toml: a rule of the API that a JSON Schema cannot
state, applied to the requests schemathesis generates as valid."""

import schemathesis


@schemathesis.hook("map_case").apply_to(operation_id="submit")
def count_the_visits(context, case):
    """`count` is the number of visits (a JSON Schema cannot tie a number to a list's length)."""
    body = case.body
    if case.meta is not None and case.meta.generation.mode.is_positive and isinstance(body, dict):
        body["count"] = len(body["visits"])
    return case
