"""BenchHub's upload and download rights, as a Jupyter server extension.

Enabled in every workspace image by /etc/jupyter/jupyter_server_config.py. Reads
``BENCHHUB_UPLOAD_ALLOWED`` and ``BENCHHUB_DOWNLOAD_ALLOWED`` (set by BenchHub's spawner from the
workspace's ``permissions``) once at start; a right that is off makes the server answer 403 to
the uploads or downloads ``policy`` describes. Changing a right takes a restart of the
workspace, as every workspace permission does.
"""

import os


def _jupyter_server_extension_points():
    return [{"module": "benchhub_rights"}]


def _load_jupyter_server_extension(serverapp):
    from .enforcement import enforce, route_classifier
    from .policy import rights_from_environ

    rights = rights_from_environ(os.environ)
    files_handler_class = getattr(serverapp.contents_manager, "files_handler_class", None)
    enforce(serverapp.web_app, rights, route_classifier(files_handler_class), serverapp.log)
    serverapp.log.info(
        "BenchHub transfer rights: uploads %s, downloads %s",
        "allowed" if rights.upload else "refused",
        "allowed" if rights.download else "refused",
    )
