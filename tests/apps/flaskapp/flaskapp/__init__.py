import os

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


class Gadget(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50))


def app_name() -> str:
    """Needs the app context that appshell pushes."""
    return current_app.name


def create_app() -> Flask:
    app = Flask("flaskapp")
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    db.init_app(app)
    return app
