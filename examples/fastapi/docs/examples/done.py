import sys

from app import crud

note = await crud.mark_done(session, int(sys.argv[1]))
print(f"{note.title!r} done; {count(Note, owner_id=note.owner_id, done=False)} open for {note.owner.name}")
