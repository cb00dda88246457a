"""Language and dialogue: the only package that knows Rasa's HTTP API and project layout.

`nlu/project/` is the Rasa project administrators edit; `nlu/actions/` is the action server's
code (it runs inside the Rasa virtual environment on Python 3.10 and talks to the gateway over
HTTP, so it holds no database credentials and never sees an address).
"""
