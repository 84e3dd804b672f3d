"""The supervisor: what happens after an attempt that did not succeed, and the sweeps that keep jobs moving."""
