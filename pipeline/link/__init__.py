"""A real edge process and cloud process exchanging partition tensors over a shaped link
(issue 16; docs/link.md). Stage entry point: ``python -m pipeline measure_link <variant>``."""
