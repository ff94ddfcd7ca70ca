from edge_emo.cli import app

app()
