-- Seed data of the seeding and masked-copy tests (integration/pgtest and
-- the real platform's TestCloudNativePGOnRealPlatform): customers with
-- personal data, and orders referring to them.
CREATE TABLE customers (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  email varchar(40) NOT NULL UNIQUE,
  phone text,
  country text NOT NULL
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  note text,
  total numeric(10, 2) NOT NULL
);
INSERT INTO customers (name, email, phone, country)
  SELECT 'Customer ' || i, 'customer' || i || '@example.com', '+41 79 ' || lpad(i::text, 7, '0'),
         CASE WHEN i % 3 = 0 THEN 'CH' ELSE 'DE' END
  FROM generate_series(1, 50) AS i;
INSERT INTO orders (customer_id, note, total)
  SELECT 1 + (i % 50), 'deliver to ' || i || ' Main Street', i * 1.5
  FROM generate_series(1, 200) AS i;
