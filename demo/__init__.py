"""The `make demo` story (`python -m demo`) and the sample estate it and the tests seed."""
