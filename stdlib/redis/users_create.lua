-- users_create: a new user of the accounts service (core/svc/users.c), or 0
-- when the login is taken. Everything under one hash tag ({users}).
-- KEYS[1] the login index (hash login -> id); ARGV: base ("P{users}:"),
-- login, id, password hash, attributes JSON, createdAt ms, confirmed 0|1.
local base = ARGV[1]
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', base .. 'u:' .. ARGV[3], 'id', ARGV[3], 'login', ARGV[2], 'pw', ARGV[4], 'attrs', ARGV[5],
           'createdAt', ARGV[6], 'confirmed', ARGV[7], 'disabled', '0')
redis.call('ZADD', base .. 'ids', 0, ARGV[3])
return 1
