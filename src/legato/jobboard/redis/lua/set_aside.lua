-- Set aside a job the client could not decode. ARGV[4] uuid.
set_aside(k, ARGV[4])
return {'OK'}
