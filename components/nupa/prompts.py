"""NUPA's zero-shot text prompts for pretrained LMs (nupa.md §3.5): a type hint, the task's instruction, then
`a <op> b = `. The wording paraphrases the official templates (text_model/benchmark_test.py was not copied);
the operators are the spec's: + - * / // %, "and" for max/min/digit ops, "at position", "count the occurrence
time of digit", "and keep significant figures as"."""

from __future__ import annotations

from components.core.numbers import output_representation

TYPE_HINTS = {
    "integer": "Return an integer like 123.",
    "float": "Return a float like 12.5.",
    "fraction": "Return an irreducible fraction like 7/13.",
    "scientific": "Return a number in scientific notation with mantissa in [1,10) like 1.23e4.",
}
OPERATORS = {"add": "+", "sub": "-", "multiply": "*", "truediv": "/", "floordiv": "//", "mod": "%"}
INSTRUCTIONS = {
    "max": "Get the maximal number:",
    "min": "Get the minimal number:",
    "digit_max": "Compare the two numbers digit by digit and keep the larger digit at each position:",
    "digit_min": "Compare the two numbers digit by digit and keep the smaller digit at each position:",
    "digit_add": "Add the two numbers digit by digit, each digit sum modulo 10, without carry:",
    "get_digit": "Get the digit at the given position, counting from the left from 0:",
    "length": "Get the total number of digits of the number:",
    "count": "Count the occurrence time of a digit in the number:",
    "to_float": "Convert the number to a float:",
    "to_scientific": "Convert the number to scientific notation:",
    "sig_fig": "Convert the number to scientific notation and round it to the given significant figures:",
}


def prompt(record: dict) -> str:
    task, a, b = record["task"], record["a"], record["b"]
    hint = TYPE_HINTS[output_representation(task, record["representation"])]
    if task in OPERATORS:
        return f"{hint} {a} {OPERATORS[task]} {b} = "
    instruction = INSTRUCTIONS[task]
    if task in ("max", "min", "digit_max", "digit_min", "digit_add"):
        expression = f"{a} and {b}"
    elif task == "get_digit":
        expression = f"{a} at position {b}"
    elif task == "count":
        expression = f"count the occurrence time of digit {b} in {a}"
    elif task == "sig_fig":
        expression = f"{a} and keep significant figures as {b}"
    else:
        expression = a
    return f"{hint} {instruction} {expression} = "
