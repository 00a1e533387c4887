"""A Flask app factory taking a config name, with a shell context processor and models on two bases."""

import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()


class Gadget(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50))


def create_app(config_name, debug=False):
    app = Flask("flaskfactory")
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    app.config["CONFIG_NAME"] = config_name
    db.init_app(app)
    from flaskfactory import legacy  # models on their own declarative base, as Flask-AppBuilder's are

    @app.shell_context_processor
    def shell_names():
        return {"config_name": config_name, "Legacy": legacy.LegacyUser}

    return app
