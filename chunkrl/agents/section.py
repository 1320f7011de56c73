"""What every agent family's config section shares (each family's config lives in its package).

Every agent config can ``summary()`` itself in one line (checkpoint errors quote it) and list its
``problems(section)``: values that could only fail later, checked before a run creates anything.
"""

from __future__ import annotations


def network_problems(section: str, config) -> list[str]:
    """Problems of the settings most agents share: learning rate, Polyak rate, ensemble, layer widths."""
    problems = []
    if config.learning_rate <= 0:
        problems.append(f"{section}.learning_rate must be > 0 (got {config.learning_rate})")
    if not 0.0 < config.target_tau <= 1.0:
        problems.append(f"{section}.target_tau must be in (0, 1] (got {config.target_tau})")
    if config.num_critics < 1:
        problems.append(f"{section}.num_critics must be >= 1 (got {config.num_critics})")
    for dims in ("actor_hidden_dims", "critic_hidden_dims"):
        widths = getattr(config, dims)
        if not all(w >= 1 for w in widths):
            problems.append(f"{section}.{dims} must be positive widths (got {list(widths)})")
    return problems


class AgentSection:
    """What every agent's config section answers besides its own fields (``summary`` and ``problems`` are
    written per section)."""

    def execute_horizon_default(self) -> int | None:
        """Actions executed per query when --execute-horizon is not given; None: the whole chunk."""
        return None
