-- apiary: what the database needs before apiary can serve it.
--
--   psql -v ON_ERROR_STOP=1 -d DBNAME -f sql/apiary.sql
--
-- Run it as a superuser (event triggers need one), in each database apiary
-- serves. It is idempotent: running it again changes nothing.
--
-- It creates:
--   - the role "authenticator" (LOGIN NOINHERIT), the one apiary connects
--     as; it has no rights of its own and switches, per request, to the
--     request's role with SET LOCAL ROLE;
--   - the role "anon" (NOLOGIN), the role of requests without a JWT, which
--     "authenticator" may switch to;
--   - the schema "api", whose tables, views and functions are the API, with
--     USAGE for "anon" (grant the objects you expose, one by one);
--   - the schema "apiary", apiary's own, not exposed;
--   - the schema "apiary_public", not exposed either, with what every
--     role may call: apiary_public.planned_count() for
--     Prefer: count=planned;
--   - event triggers that send NOTIFY apiary, 'reload schema' after every
--     DDL command, so a migration reaches apiary's schema cache without a
--     restart. apiary LISTENs on a direct connection ([database]
--     listen_uri): notifications do not cross pgBouncer's transaction pool.
--
-- Roles belong to the cluster, not to the database: they are created only
-- if missing. "authenticator" gets no password here; on a server reached
-- over a network give it one (ALTER ROLE authenticator PASSWORD '...') and
-- require scram-sha-256 in pg_hba.conf.

begin;

set local client_min_messages = warning;

do $$
begin
    if not exists (select from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'anon') then
        create role anon nologin;
    end if;
    if not exists (select from pg_auth_members m
                   join pg_roles r on r.oid = m.roleid
                   join pg_roles u on u.oid = m.member
                   where r.rolname = 'anon' and u.rolname = 'authenticator') then
        grant anon to authenticator;
    end if;
end
$$;

create schema if not exists api;
grant usage on schema api to anon;

create schema if not exists apiary;
revoke all on schema apiary from public;
comment on schema apiary is 'apiary''s own objects; not exposed by the API';

-- Sends NOTIFY apiary, 'reload schema' after DDL. Notifications are sent at
-- commit, once per transaction however many commands it ran, and never for
-- a transaction that rolls back. Commands that touch only temporary objects
-- (a function that creates a temporary table on every call) send nothing:
-- they cannot change the API, and reloading on each would be a storm.
create or replace function apiary.notify_schema_reload()
returns event_trigger
language plpgsql
as $$
begin
    if tg_event = 'sql_drop' then
        if exists (select from pg_event_trigger_dropped_objects() where not is_temporary) then
            perform pg_notify('apiary', 'reload schema');
        end if;
    elsif exists (select from pg_event_trigger_ddl_commands()
                  where schema_name is null
                     or not (schema_name = 'pg_temp' or schema_name like 'pg\_temp\_%')) then
        perform pg_notify('apiary', 'reload schema');
    elsif not exists (select from pg_event_trigger_ddl_commands()) and tg_tag not like 'DROP %' then
        -- A command that reports no objects; DROPs report theirs to sql_drop.
        perform pg_notify('apiary', 'reload schema');
    end if;
end
$$;

revoke all on function apiary.notify_schema_reload() from public;
comment on function apiary.notify_schema_reload() is
    'event trigger: NOTIFY apiary, ''reload schema'' after DDL';

-- CREATE EVENT TRIGGER has no OR REPLACE; dropping and creating again keeps
-- the definition current. Event trigger commands fire no event triggers.
drop event trigger if exists apiary_ddl_command_end;
create event trigger apiary_ddl_command_end on ddl_command_end
    execute function apiary.notify_schema_reload();

-- Prefer: count=planned: the planner's row estimate for a read, taken from
-- EXPLAIN of the read's count query with its parameters. apiary passes the
-- query (built from schema-cache names only) and the request's values as a
-- text array; the values reach EXPLAIN as literals quoted here, by
-- PostgreSQL. It runs with the caller's rights (SECURITY INVOKER), so
-- grants and row-level security apply as they do to the read itself.
create schema if not exists apiary_public;
revoke all on schema apiary_public from public;
grant usage on schema apiary_public to public;
comment on schema apiary_public is 'apiary''s objects that every role may use; not exposed by the API';

create or replace function apiary_public.planned_count(query text, params text[])
returns bigint
language plpgsql
as $$
declare
    args text;
    plan json;
begin
    if exists (select from pg_prepared_statements where name = 'apiary_planned_count') then
        deallocate apiary_planned_count;
    end if;
    execute 'prepare apiary_planned_count as ' || query;
    select string_agg(quote_nullable(p), ', ' order by i) into args
    from unnest(params) with ordinality as u(p, i);
    execute 'explain (format json) execute apiary_planned_count'
            || coalesce('(' || args || ')', '') into plan;
    deallocate apiary_planned_count;
    return (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
end
$$;

grant execute on function apiary_public.planned_count(text, text[]) to public;
comment on function apiary_public.planned_count(text, text[]) is
    'Prefer: count=planned: the row estimate of a read''s count query';

drop event trigger if exists apiary_sql_drop;
create event trigger apiary_sql_drop on sql_drop
    execute function apiary.notify_schema_reload();

commit;
