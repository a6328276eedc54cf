"""3D models: architecture registry, recorded invertible preprocessing, model directories, train, predict."""
