"""The diff: target objects versus live (or base-revision) objects, as a ChangeSet.

Role: pair target and live objects by key (``pair``), remove what must not count as a
difference (``normalize``: server metadata, status, defaults, the revision annotation),
classify each pair as create / update / replace / delete / unchanged with a field-level
diff (``changeset``), and render previews (``render``: text, markdown, json; ``yamltext``).
Inputs: two lists of plain-dict objects and a plan report. Outputs: a
:class:`~reconciler.diff.changeset.ChangeSet` and strings. Never: I/O, clock, randomness;
never proposes deleting an object without our owner label.
"""
