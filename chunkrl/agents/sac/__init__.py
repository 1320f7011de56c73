"""The chunked SAC family: QC-RLPD, RLPD-AC and RLPD, with an MLP or ACT-style transformer actor."""
