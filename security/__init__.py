"""Keys, signing and verification of actor assertions (contract/assertion.py), shared by the
worker, starter.py and, later, the payload codec server.

Kept out of contract/ because contract imports no crypto, and out of workflows/ which holds only
deterministic workflow code. `signing.verify` is pure and may run inside the workflow sandbox
(imported under `workflow.unsafe.imports_passed_through()`); key files are read in keys.py only.
"""
