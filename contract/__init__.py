"""The JSON contract shared by workflows, activities, starter.py and integrators.

Plain pydantic models only: nothing here may import a database driver, crypto or HTTP
library, because workflows import these modules inside the sandbox.
"""
