# Passage: `make run` to try it, `make test` to run the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-12)

# Development profile for `make run`: DEBUG on, filesystem broker, everything under var/.
RUN_ENV := DEBUG=1 CELERY_BROKER_URL=filesystem:// PYTHONUNBUFFERED=1

.PHONY: run test install lock messages totp serve-check clean

install: $(STAMP)

$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(RUN_ENV) $(PY) manage.py keyring generate --if-missing
	$(RUN_ENV) $(PY) manage.py migrate --noinput
	$(RUN_ENV) $(PY) manage.py seed_demo
	@echo "Serving http://127.0.0.1:8000 with a Celery worker and beat (Ctrl-C stops all)."
	@trap 'kill 0' INT TERM EXIT; \
	$(RUN_ENV) $(VENV)/bin/celery -A config worker --beat --pool=solo --loglevel=INFO \
		--schedule=var/celerybeat-schedule & \
	$(RUN_ENV) $(PY) manage.py runserver 127.0.0.1:8000

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Print a demo user's current second-factor code: make totp U=caseworker
totp: install
	@DEBUG=1 $(PY) manage.py totp_code $(or $(U),caseworker)

# Recompile the lock file after changing pyproject.toml (needs the registry).
lock: install
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --extra test --generate-hashes --strip-extras \
		--output-file requirements.lock pyproject.toml

# Extract and compile translations (needs gettext); the .mo files are committed.
messages: install
	cd . && DEBUG=1 $(PY) manage.py makemessages -l fa --ignore '.venv/*' --ignore 'var/*'
	DEBUG=1 $(PY) manage.py compilemessages --ignore '.venv/*'

clean:
	rm -rf $(VENV) var
