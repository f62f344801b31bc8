"""One module (or script) per client; each implements the scenarios of compat.scenarios."""
