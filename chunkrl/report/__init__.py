"""Figures and tables over finished runs (``chunkrl plot``, ``chunkrl report``)."""
