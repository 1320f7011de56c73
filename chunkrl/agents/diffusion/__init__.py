"""Offline chunked diffusion policies: Diffusion-QL (DDPM) and CPQL (consistency), semi-Markov chunk critics."""
