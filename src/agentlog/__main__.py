from agentlog.cli import app

app()
