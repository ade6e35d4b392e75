"""Line Auth BFF: a backend-for-frontend for Telenor line-authenticated OAuth."""
