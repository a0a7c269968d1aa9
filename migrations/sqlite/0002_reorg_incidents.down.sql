DROP TABLE reorg_incidents;
