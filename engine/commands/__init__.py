"""Click commands, one module per command group; each converts library errors into ClickException."""
