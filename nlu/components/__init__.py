"""Components that run inside Rasa (Python 3.10, the Rasa environment), named by module path
in nlu/project/config.yml. Rasa imports them from the repository root, which every Rasa
process gets on PYTHONPATH (nlu/runtime.py: RASA_ENV). The gateway never imports them."""
