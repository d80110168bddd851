"""Sample systems under test, shipped for demos and tests."""
