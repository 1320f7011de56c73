"""The flow family: QC-FQL / FQL-n / FQL (one-step flow policy) and QC / BFN-n / BFN (best of N flow chunks)."""
