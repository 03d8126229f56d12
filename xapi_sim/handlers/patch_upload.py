"""``PUT /pool_patch_upload``: a patch uploaded to the pool (6.5 SP1 and 7.0; 7.1 on it
answers as xapi's handler does there, not modelled: 404).

xen-api Dundee ``ocaml/xapi/xapi_pool_patch.ml`` ``pool_patch_upload_handler``: the master
only (a member answers 500), ``with_context "Uploading host patch"`` (credentials as every
handler, realm ``pool_patch.upload``), ``200 OK`` with the task id before the body is read,
then the patch record (``classes/patches.py``: the body is the patch's ``<info>``
document); the task's result is the new ``pool_patch``'s ref, or its error.
"""

from __future__ import annotations

import logging

from ..classes import patches
from ..errors import internal
from ..wire import routes

log = logging.getLogger(__name__)

MAX_PATCH = 64 * 1024 * 1024  # bytes of a simulated patch read at most


@routes.put("/pool_patch_upload", stream=True)
def pool_patch_upload(req: routes.Request) -> None:
    db = req.host.db
    if "pool_update" in db.schema.classes["pool_patch"].fields:
        raise routes.Missing()  # 7.1 on: updates come as pool_update VDIs
    if not req.host.is_master:
        raise internal("Xapi_pool_patch.CannotUploadPatchToSlave")
    req.authenticate("pool_patch.upload")
    with req.context("Uploading host patch") as task:
        req.send_head("200 OK", [("task-id", task.ref)])
        chunks, total = [], 0
        while total <= MAX_PATCH:
            data = req.body.read()
            if not data:
                break
            chunks.append(data)
            total += len(data)
        with db.lock:
            task.result = patches.upload(req.world, db, b"".join(chunks))
