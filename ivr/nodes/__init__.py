"""Per-node behaviour of the interpreter: asking nodes (menus, collections) and exits."""
