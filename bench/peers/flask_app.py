"""The seeds' API node: Flask, one INSERT (and commit) per request into PostgreSQL."""
import os
import socket

import psycopg2
from flask import Flask, request

app = Flask(__name__)
NODE = os.environ.get("NODE_ID", socket.gethostname())
_conn = None


def conn():
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["DATABASE_URL"])
    return _conn


@app.route("/")
def hello():
    c = conn()
    with c.cursor() as cur:
        cur.execute(
            "INSERT INTO requests (node_id, method, path, status, message, created_at) "
            "VALUES (%s, 'GET', '/', 200, %s, now())",
            (NODE, request.args.get("message")),
        )
    c.commit()
    return f"Written to DB by node {NODE}"
