"""Components and configuration of the Pulumi program that ships the catalog server to Cloud Run."""
