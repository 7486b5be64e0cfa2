-- apiary example application, part two: sign-up, log-in and row-level
-- security for the tasks of 0001_example_tasks.sql.
--
-- A migration: "apiary migrate" applies it after 0001, once, in a
-- transaction of its own (so it holds no BEGIN or COMMIT). It is also
-- idempotent: run again by hand it changes nothing and keeps every login.
--
-- What it adds:
--   schema "auth" (private, not exposed): auth.logins (e-mail, password
--     hashed with pgcrypto's crypt() and gen_salt('bf')), auth.jwt_secret
--     (the HS256 secret the tokens are signed with: the same bytes apiary
--     reads from [api] jwt_secret_file), and the helpers that sign a JWT
--     in SQL (HMAC-SHA256 from pgcrypto, base64url).
--   RPC (schema "api"):
--     signup(email text, password text) -> json   {"token": "..."}; a new
--        user in api.users with a login; 409 (23505) for a taken e-mail,
--        400 for a password under 8 characters
--     login(email text, password text) -> json    {"token": "..."}; 401
--        (PT401) for a wrong e-mail or password
--     me() -> json                                 who the token says the
--        caller is: {"user_id", "email", "role"}
--   The token: {"role": "webuser", "user_id": N, "email": "...", "iat": T,
--     "exp": T + 3600}, HS256.
--   Row-level security on api.tasks: the role webuser (a request with a
--     token) sees and changes only the rows whose user_id is the token's
--     user_id; anon (no token) keeps the example's open access.
--
-- The secret. apiary verifies tokens with the key in [api] jwt_secret_file
-- (at least 32 bytes, mode 0600); signup() and login() sign with
-- auth.jwt_secret, or, when that table is empty, the setting
-- app.jwt_secret. Give both the same value, for instance:
--
--   openssl rand -base64 48 | tr -d '\n' > /etc/apiary/jwt_secret
--   chmod 0600 /etc/apiary/jwt_secret; chown apiary /etc/apiary/jwt_secret
--   psql -d DBNAME -c "insert into auth.jwt_secret (secret)
--       values ('$(cat /etc/apiary/jwt_secret)')
--       on conflict (id) do update set secret = excluded.secret, updated_at = now()"
--
-- (or ALTER DATABASE DBNAME SET app.jwt_secret = '...', which every role
-- of the database can read with current_setting(): the table is better).
-- contrib/dev/run generates one secret, writes .run/jwt_secret and stores
-- it in the table. To rotate, see doc/operations.md.

set local client_min_messages = warning;

create extension if not exists citext;
-- pgcrypto is a trusted extension: the owner of the database may create it.
create extension if not exists pgcrypto with schema public;

do $$
begin
    if not exists (select from pg_roles where rolname = 'webuser') then
        create role webuser nologin;
    end if;
    if not exists (select from pg_auth_members m
                   join pg_roles r on r.oid = m.roleid
                   join pg_roles u on u.oid = m.member
                   where r.rolname = 'webuser' and u.rolname = 'authenticator') then
        grant webuser to authenticator;
    end if;
end
$$;
grant usage on schema api to anon, webuser;

create schema if not exists auth;
revoke all on schema auth from public;
comment on schema auth is 'Logins and the JWT secret of the example application; not exposed';

-- One row per user who can log in. user_id is api.users' id; there is no
-- foreign key, so that tasks.sql can drop and rebuild api.users: login()
-- checks that the user still exists instead.
create table if not exists auth.logins (
    user_id       bigint primary key,
    email         citext not null unique,
    password_hash text not null,
    created_at    timestamptz not null default now()
);
revoke all on auth.logins from public;

-- The HS256 secret (one row).
create table if not exists auth.jwt_secret (
    id         boolean primary key default true check (id),
    secret     text not null check (octet_length(secret) >= 32),
    updated_at timestamptz not null default now()
);
revoke all on auth.jwt_secret from public;

create or replace function auth.secret()
returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
    s text := (select j.secret from auth.jwt_secret j);
begin
    s := coalesce(s, nullif(current_setting('app.jwt_secret', true), ''));
    if s is null or octet_length(s) < 32 then
        raise sqlstate 'PT500' using
            message = 'The JWT secret is not configured',
            hint = 'insert the secret of [api] jwt_secret_file into auth.jwt_secret';
    end if;
    return s;
end
$$;

create or replace function auth.b64url(data bytea)
returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
    select translate(rtrim(encode(data, 'base64'), '='), E'+/\n', '-_')
$$;

-- A compact JWS of claims, HS256 with auth.secret().
create or replace function auth.sign(claims json)
returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    with i as (
        select auth.b64url(convert_to('{"alg":"HS256","typ":"JWT"}', 'UTF8')) || '.' ||
               auth.b64url(convert_to(claims::text, 'UTF8')) as input
    )
    select i.input || '.' ||
           auth.b64url(public.hmac(convert_to(i.input, 'UTF8'), convert_to(auth.secret(), 'UTF8'),
                                   'sha256'))
    from i
$$;

create or replace function auth.token_for(user_id bigint, email text)
returns json
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select json_build_object('token', auth.sign(json_build_object(
        'role', 'webuser',
        'user_id', user_id,
        'email', email,
        'iat', extract(epoch from now())::bigint,
        'exp', extract(epoch from now())::bigint + 3600)))
$$;

revoke all on all functions in schema auth from public;

-- ---------------------------------------------------------------------------
-- RPC
-- ---------------------------------------------------------------------------

-- SECURITY DEFINER: anon may not read auth.logins or insert into
-- api.users; these functions do it for them, and nothing else.
create or replace function api.signup(email text, password text)
returns json
language plpgsql volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    uid bigint;
begin
    if password is null or length(password) < 8 then
        raise exception 'The password must have 8 characters at least'
            using errcode = 'invalid_parameter_value';
    end if;
    insert into api.users (email, name)
    values (signup.email, split_part(signup.email, '@', 1))
    returning id into uid;
    insert into auth.logins (user_id, email, password_hash)
    values (uid, signup.email, public.crypt(signup.password, public.gen_salt('bf')));
    return auth.token_for(uid, signup.email);
end
$$;
comment on function api.signup(text, text) is
    'Registers a user who can log in; returns {"token": JWT}';

create or replace function api.login(email text, password text)
returns json
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    l auth.logins;
begin
    select * into l from auth.logins g where g.email = login.email;
    -- The same work whether the e-mail is known or not: the answer's time
    -- must not tell.
    if public.crypt(coalesce(login.password, ''),
                    coalesce(l.password_hash, '$2a$06$aaaaaaaaaaaaaaaaaaaaaa')) is distinct from
           l.password_hash
       or not exists (select from api.users u where u.id = l.user_id) then
        raise sqlstate 'PT401' using message = 'Invalid e-mail or password';
    end if;
    return auth.token_for(l.user_id, l.email::text);
end
$$;
comment on function api.login(text, text) is
    'Checks an e-mail and password; returns {"token": JWT}';

create or replace function api.me()
returns json
language sql stable
as $$
    select json_build_object(
        'user_id', (nullif(current_setting('request.jwt.claims', true), '')::json ->> 'user_id')::bigint,
        'email', nullif(current_setting('request.jwt.claims', true), '')::json ->> 'email',
        'role', current_user)
$$;
comment on function api.me() is 'The caller, as the JWT names it';

revoke execute on function api.signup(text, text), api.login(text, text), api.me() from public;
grant execute on function api.signup(text, text), api.login(text, text), api.me() to anon, webuser;

-- ---------------------------------------------------------------------------
-- Row-level security: a user's tasks are theirs
-- ---------------------------------------------------------------------------

alter table api.tasks enable row level security;

-- anon keeps the example's open access (read everything, add and change
-- tasks): the demonstration data stays public.
drop policy if exists tasks_anon on api.tasks;
create policy tasks_anon on api.tasks to anon using (true) with check (true);

-- webuser: only the rows of the user the token names, for every command,
-- and a row it writes must stay theirs.
drop policy if exists tasks_owner on api.tasks;
create policy tasks_owner on api.tasks to webuser
    using (user_id = (nullif(current_setting('request.jwt.claims', true), '')::json ->> 'user_id')::bigint)
    with check (user_id = (nullif(current_setting('request.jwt.claims', true), '')::json ->> 'user_id')::bigint);

