# Passage: `make run` to try it, `make test` to run the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-12)

# Development profile for `make run`: DEBUG on, filesystem broker, everything under var/.
RUN_ENV := DEBUG=1 CELERY_BROKER_URL=filesystem:// PYTHONUNBUFFERED=1

.PHONY: run test install lock messages totp serve clean

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

# Production processes in the foreground: gunicorn, one Celery worker and one beat, against
# the environment's PostgreSQL and Redis with DEBUG off (see README, "Production").
serve: install
	@test -n "$$SECRET_KEY" -a -n "$$DATABASE_URL" -a -n "$$CELERY_BROKER_URL" || \
		{ echo "make serve needs SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL (and REDIS_URL, ALLOWED_HOSTS, PASSAGE_KEYRING)"; exit 2; }
	$(PY) manage.py check --deploy --fail-level WARNING
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/celery -A config worker --loglevel=INFO & \
	$(VENV)/bin/celery -A config beat --loglevel=INFO --schedule=$${PASSAGE_VAR_DIR:-var}/celerybeat-schedule & \
	$(VENV)/bin/gunicorn config.wsgi --bind $${BIND:-127.0.0.1:8001} --workers $${WEB_WORKERS:-3} --timeout 30
