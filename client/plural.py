"""Words that agree with a count, for people: "1 product", "2 products", "1 product matches"."""


def plural(count: int, one: str, many: str | None = None) -> str:
    """`one` for a count of 1, else `many` (by default `one` + "s"): a noun, or a verb that agrees."""
    if count == 1:
        return one
    return one + "s" if many is None else many


def counted(count: int, one: str, many: str | None = None) -> str:
    """The count and the noun that agrees with it: `counted(1, "page")` is "1 page"."""
    return f"{count} {plural(count, one, many)}"
