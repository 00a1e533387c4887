from unboundapp.models import DBSession, Task


def add_task(title: str) -> Task:
    """App code the operator calls from the shell: it uses the app's own scoped session."""
    task = Task(title=title)
    DBSession.add(task)
    DBSession.flush()
    return task
