"""The tales grammar (storyjax/teachers/tales_grammar.py): exact for the tales corpus's world; no settings."""

from storyjax.teachers.kinds.kind import Kind

KIND = Kind(name="tales", build="storyjax.teachers.tales_grammar:TalesTeacher", identity=lambda cfg: {"the tales grammar"},
            pairwise=True, fix_dead=lambda cfg, key: "the stories themselves (the tales grammar grades any text)")
