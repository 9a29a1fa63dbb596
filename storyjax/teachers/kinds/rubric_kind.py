"""The offline rubric (storyjax/teachers/rubric.py): no settings, no model."""

from storyjax.teachers.kinds.kind import Kind

KIND = Kind(name="rubric", build="storyjax.teachers.rubric:RubricTeacher", identity=lambda cfg: {"the offline rubric"},
            pairwise=True, fix_dead=lambda cfg, key: "the stories themselves (the rubric grades any text)")
