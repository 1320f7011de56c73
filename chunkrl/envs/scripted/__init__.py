"""Generation that drives simulators: OGBench's scripted oracles and the scripted ALOHA demonstrations."""
