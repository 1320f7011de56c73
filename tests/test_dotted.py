from chunkrl.dotted import flatten


def test_flatten_names_each_setting_by_its_dotted_path_and_makes_lists_hashable():
    nested = {"agent": "qc-fql", "flow": {"alpha": 300, "actor_hidden_dims": [256, 256], "ema": {"tau": 0.005}}}
    assert flatten(nested) == {
        "agent": "qc-fql",
        "flow.alpha": 300,
        "flow.actor_hidden_dims": (256, 256),
        "flow.ema.tau": 0.005,
    }
    assert len({frozenset(flatten(nested).items())}) == 1  # every value hashes: settings can group runs
