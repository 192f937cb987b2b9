"""ADClick / ADClick-Seg networks, PWAM fusion and losses (pure nn.Modules; no I/O)."""
