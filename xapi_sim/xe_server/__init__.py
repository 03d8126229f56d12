"""The server side of ``xe``: every simulated host's ``POST /cli``.

Mirrors xen-api Dundee's CLI server (``xapi_cli.ml``, ``cli_frontend.ml``,
``cli_operations.ml``, ``records.ml``, ``record_util.ml``, ``cli_printer.ml``,
``cli_util.ml``). Modules, from the bottom up:

* ``render.py``    pure formatting: values, record layout, ``--minimal``, error texts, help lists
* ``errors.py``    the CLI's exceptions and what each prints (``exception_handler``)
* ``values.py``    xe argument values (``bool_of_string``, ``bytes_of_string``, enums); the
  OCaml literal syntax underneath is ``wire/ocaml.py``
* ``context.py``   one command in flight: session, parameters, API calls, reference lookup
* ``records/``     the CLI record of each class (field names, order, rendering, setters)
* ``selectors.py`` the one record filter, VM and host selectors, ``params=``
* ``ops.py``       an operation on the selected objects, ``--multiple``, waiting for tasks
* ``commands/``    the command table: hand-written commands per class, generated
  ``-list``/``-param-*`` commands
* ``help.py``      ``xe help``
* ``frontend.py``  request body -> command name and parameters
* ``handler.py``   ``handle_cli``: the protocol exchange, login, run, print, logout

The client is ``xapi_sim/xe.py``; both speak ``wire/cliproto.py``.
"""
