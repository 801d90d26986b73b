-- One database per service (each service owns its data); docker-compose.yml
-- mounts this into /docker-entrypoint-initdb.d, so it runs once, on an empty
-- data volume, as POSTGRES_USER (shop), who then owns the databases.
CREATE DATABASE users;
CREATE DATABASE products;
CREATE DATABASE orders;
