-- PostgreSQL least privilege for one motcua service (docs/adr/0077-postgres-roles.md).
--
-- Creates, or brings back in line (idempotent: run it again after any change):
--   database motcua_<svc>            CONNECT revoked from PUBLIC
--   role motcua_<svc>_migrator       LOGIN; owns the database and its schema public: runs the
--                                    migrations (DDL), MOTCUA_<SVC>_MIGRATION_DATABASE_URL
--   role motcua_<svc>_app            LOGIN; CONNECT on its own database only, USAGE on public,
--                                    SELECT/INSERT/UPDATE/DELETE on the tables and USAGE/SELECT
--                                    on the sequences the migrator creates (default privileges);
--                                    no DDL: MOTCUA_<SVC>_DATABASE_URL of the running service
-- LISTEN/NOTIFY and advisory locks (the outbox relay) need no privilege beyond CONNECT.
--
-- Run as a superuser, or on a managed service as its admin role (CREATEDB, CREATEROLE), once
-- per service, connected to the maintenance database:
--
--   psql "host=... user=postgres dbname=postgres" -v svc=dossier \
--        -v migrator_password="$MIGRATOR_PW" -v app_password="$APP_PW" -f infra/postgres-roles.sql
--
-- Variables: svc (required: dossier, notify, payment, audit or another [a-z0-9_] name);
-- migrator_password, app_password (optional; left out, the password is not changed: the local
-- cluster of infra/postgres.sh trusts 127.0.0.1). `bash infra/postgres.sh roles` runs it for
-- the four services against the local cluster.

\set ON_ERROR_STOP on
\if :{?svc}
\else
  DO $$ BEGIN RAISE EXCEPTION 'postgres-roles.sql: set the service: psql -v svc=dossier -f infra/postgres-roles.sql'; END $$;
\endif

\set db motcua_ :svc
\set migrator motcua_ :svc _migrator
\set app motcua_ :svc _app

SELECT :'svc' ~ '^[a-z][a-z0-9_]{0,30}$' AS svc_ok \gset
\if :svc_ok
\else
  DO $$ BEGIN RAISE EXCEPTION 'postgres-roles.sql: svc must match ^[a-z][a-z0-9_]{0,30}$'; END $$;
\endif

-- Roles: created once (no superuser, replication or RLS bypass: the defaults); LOGIN and no
-- CREATEDB/CREATEROLE (and the passwords given) set on every run.
SELECT format('CREATE ROLE %I', :'migrator')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'migrator') \gexec
SELECT format('CREATE ROLE %I', :'app')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
SELECT count(*) = 0 AS roles_ok FROM pg_roles
 WHERE rolname IN (:'migrator', :'app') AND (rolsuper OR rolreplication OR rolbypassrls) \gset
\if :roles_ok
\else
  DO $$ BEGIN RAISE EXCEPTION 'postgres-roles.sql: a service role is a superuser, or has REPLICATION or BYPASSRLS: remove that first'; END $$;
\endif
ALTER ROLE :"migrator" LOGIN NOCREATEDB NOCREATEROLE;
ALTER ROLE :"app" LOGIN NOCREATEDB NOCREATEROLE;
\if :{?migrator_password}
ALTER ROLE :"migrator" PASSWORD :'migrator_password';
\endif
\if :{?app_password}
ALTER ROLE :"app" PASSWORD :'app_password';
\endif

-- A non-superuser admin (managed PostgreSQL) may hand a database to, and set the default
-- privileges of, only a role it is a member of; a superuser needs no membership.
SELECT format('GRANT %I TO %I', :'migrator', current_user)
 WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   AND NOT pg_has_role(current_user, :'migrator', 'USAGE') \gexec

-- The database, owned by the migrator; nobody but its two roles may connect.
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'migrator')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"migrator";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";

\connect :"db"

-- The schema belongs to the migrator; PUBLIC may neither create in it nor use it.
ALTER SCHEMA public OWNER TO :"migrator";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";

-- Rows, not DDL: for every table and sequence the migrator creates from now on ...
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"app";
-- ... and for those already there (a rerun after migrations).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";

\echo postgres-roles.sql: :db ready (owner :migrator, runtime role :app)
