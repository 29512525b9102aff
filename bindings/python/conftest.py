# Lets `pytest bindings/python` import the q8bert package from this directory without installing it.
