"""The mutation corpus of the README's guarantees and its runner (`make mutants`)."""
