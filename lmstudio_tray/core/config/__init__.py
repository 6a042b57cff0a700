"""The config: its schema (`schema`), loading with the team profile's layer (`loader`), the only writer
(`store`), profiles, presets, the settings reference, instance editing and the team profile (`team`,
`team_fetch`)."""
