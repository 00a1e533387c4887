"""The app's one Database, made at import time: --app dbinterface.container:database names the object."""

import os

from dbinterface.database import Database

database = Database(os.environ["DB_URL"])
database.create_database()
