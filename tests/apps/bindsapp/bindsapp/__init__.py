"""A Flask-SQLAlchemy app with a second database (SQLALCHEMY_BINDS): two engines."""

import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


class Gadget(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50))


class Event(db.Model):
    __bind_key__ = "analytics"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50))


def create_app() -> Flask:
    app = Flask("bindsapp")
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    app.config["SQLALCHEMY_BINDS"] = {"analytics": os.environ["ANALYTICS_URL"]}
    db.init_app(app)
    return app
